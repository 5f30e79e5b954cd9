"""A job whose exception's constructor takes other arguments than its args (issue 22), run
in a container by test_container_errors (no hither in the image: the runtime's stand-in)."""
import os

import hither as hi

IMAGE = os.environ.get("HITHER_TEST_IMAGE", "hither-test/python-numpy:3.11")


class CodedError(Exception):
    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code


@hi.function('ct_coded_fail', '0.1.0')
@hi.container("docker://" + IMAGE)
def ct_coded_fail(code):
    raise CodedError("refused in the box", code)
