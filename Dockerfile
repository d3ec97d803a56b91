# keeper runtime image. Node is a build tool only: it compiles our Solidity (solc-js) in the
# first stage; the runtime stage has Python and the compiled build/contracts.json.
FROM node:20-bookworm-slim AS contracts
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY contracts ./contracts
COPY keeper/__init__.py keeper/errors.py ./keeper/
COPY keeper/contracts ./keeper/contracts
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
    && python3 -m keeper.contracts.solc && test -s build/contracts.json

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 keeper
WORKDIR /app
COPY pyproject.toml README.md ./
COPY keeper ./keeper
COPY contracts ./contracts
COPY config ./config
COPY --from=contracts /src/build/contracts.json ./build/contracts.json
# The protocol ABIs the keeper encodes with (no node at run time, only the JSON artifacts).
COPY --from=contracts /src/node_modules/@aave/core-v3/artifacts ./node_modules/@aave/core-v3/artifacts
COPY --from=contracts /src/node_modules/@uniswap/v2-core/build ./node_modules/@uniswap/v2-core/build
COPY --from=contracts /src/node_modules/@uniswap/v2-periphery/build ./node_modules/@uniswap/v2-periphery/build
# Editable: the package finds contracts/ and build/ beside it, as in a checkout.
RUN pip install --no-cache-dir -e . && chown -R keeper /app
USER keeper
EXPOSE 9108
# Secrets come from the environment or mounted files, never from the image:
#   KEEPER_KEYSTORE_PASSWORD_FILE=/run/secrets/keeper-pw
ENTRYPOINT ["keeper"]
CMD ["run", "-c", "config/example.mainnet.toml", "--dry-run"]
