"""The one error type users see: its message is a single line that says what is wrong and what to do."""


class UserFacingError(Exception):
    """Bad input or a missing resource; the app shows the message and keeps running."""

    def __init__(self, message: str):
        # One line, always: the UI shows it in a status bar and the CLI prints it after "error:".
        super().__init__(" ".join(str(message).split()))
