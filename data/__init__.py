"""Small public-domain data sets shipped with nvm-lstm (provenance in README.md beside this file)."""
