from vlmcli.app import main

main()
