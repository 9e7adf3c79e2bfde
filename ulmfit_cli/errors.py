"""User-facing errors: one paragraph naming the thing and the fix, never a traceback."""


class UserError(Exception):
    """Bad input from the user (a path, a key, a file). The CLI prints it and exits 2."""

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(f"{what} {fix}" if fix else what)


def disk_error(e: OSError, what: str, *, full_fix: str, access_fix: str, full_note: str = "") -> "UserError | OSError":
    """A full disk (ENOSPC, EDQUOT) or an unwritable path (EACCES, EROFS, EPERM) as a UserError naming
    the file (`e.filename`, else `what`); any other OSError is returned unchanged."""
    import errno

    where = e.filename or what
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"No space left on the device while writing {where}{full_note}.", full_fix)
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return UserError(f"Cannot write {where}: {e.strerror}.", access_fix)
    return e
