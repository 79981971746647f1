"""The sandbox image's build context, shipped inside interp as package data."""
