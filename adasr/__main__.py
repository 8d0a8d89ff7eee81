from adasr._cli.main import main

__all__ = []

main()
