"""Shared by every test directory: this folder is on sys.path (pytest puts a conftest's folder there), so test
modules anywhere under tests/ import the helpers beside it (`hostile`)."""
