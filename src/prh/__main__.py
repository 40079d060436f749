from prh.cli import main

main()
