"""User-facing errors: one paragraph naming the thing and the fix, never a traceback."""


class UserError(Exception):
    """Bad input from the user (a path, a key, a file). The CLI prints it and exits 2."""

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(f"{what} {fix}" if fix else what)
