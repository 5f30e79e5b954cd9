"""A job whose exception's constructor takes other arguments than its args (issue 22), for
test_remote_errors; the resource imports it from the job's code bundle."""
import hither as hi


class CodedError(Exception):
    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code
        self.detail = {"code": code, "why": msg}


@hi.function('rt_coded_fail', '0.1.0')
def rt_coded_fail(code):
    raise CodedError("refused with a code", code)
