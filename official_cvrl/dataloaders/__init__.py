"""dataloaders package."""
