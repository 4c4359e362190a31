"""The desktop bundle's entry script: the site operator app (``gui.app.main``)."""

from gui.app import main

if __name__ == "__main__":
    main()
