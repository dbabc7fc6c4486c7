from mer.cli import main

main()
