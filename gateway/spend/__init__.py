"""What a request costs: prices from litellm's bundled map and the config, estimates for admission."""
