"""Problems: the synthetic arithmetic generator and loaders for benchmark files."""
