from sonify_toolkit.cli import main

main()
