"""Readers, importers, validation and folds, all mapping into the canonical PairRecord."""
