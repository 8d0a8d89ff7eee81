from adasr._cli.main import main

main()
