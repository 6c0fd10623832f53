"""Public helpers for testing modelport and code built on it: fake instances, spec builders."""
