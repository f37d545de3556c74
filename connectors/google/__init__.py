"""Google Contacts through the People API (its sandbox: ``connectors.sandbox.google``)."""
