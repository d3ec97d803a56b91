from keeper.cli import main

main()
