"""What the adapters learned (stage 7): weight space, representation space, layer importance,
cross-lingual transfer, probing, efficiency, and the report that gathers every result of a run."""
