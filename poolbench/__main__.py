from poolbench.cli import main

main()
