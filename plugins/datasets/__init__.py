"""Built-in datasets, one module per dataset."""
