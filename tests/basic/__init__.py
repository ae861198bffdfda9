"""Dialog-language test support: the fake platform and the .chat conversation runner."""

import pytest

pytest.register_assert_rewrite("tests.basic.chat")
