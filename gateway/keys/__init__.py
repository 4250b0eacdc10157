"""Virtual keys: records, secrets, stores and the authenticator that reads them."""
