"""Builders of tiny random models saved to folders, loaded by the product through from_pretrained(path)."""
