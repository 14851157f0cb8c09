"""The two ways a fetch of a user's URL ends badly, shared by the URL checks, the network and the fetch."""


class FetchRefused(ValueError):
    """The URL or an address it leads to is not allowed. str(exc) is a sentence a user can read.

    A ValueError because the input is what is wrong: retrying will not help.
    """


class FetchFailed(Exception):
    """The fetch could not complete (timeout, too large, connection refused, bad TLS...).

    str(exc) is a sentence a user can read. It never carries internal exception text, resolved
    addresses or file paths, so it can be shown to the user as is; the cause stays in __cause__ for logs.
    `transient`: the same fetch may well work in a moment (a timeout, a refused or cut connection),
    unlike a page that is too large or a certificate that does not verify.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
