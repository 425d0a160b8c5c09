from unified_adv.cli import main

main()
