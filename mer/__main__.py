from mer.pipeline.cli import main

main()
