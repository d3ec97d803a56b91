from keeper.commands.cli import main

main()
