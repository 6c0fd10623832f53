"""Parse repeated `--opt key=value` channel arguments (int when numeric)."""


def parse_opts(items):
    out = []
    for it in items or ():
        k, v = it.split("=", 1)
        try:
            v = int(v)
        except ValueError:
            pass
        out.append((k, v))
    return out
