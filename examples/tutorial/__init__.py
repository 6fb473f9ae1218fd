"""The tutorial of the documentation (docs/tutorial.md): its code, run by the tests."""
