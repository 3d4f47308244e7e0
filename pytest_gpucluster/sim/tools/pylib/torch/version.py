"""torch.version of the fake torch."""
cuda = "12.4"
__version__ = "2.5.1+cu124"
git_version = "a8d6afb511a69687bbb2b7e88a3cf67917e1697e"
