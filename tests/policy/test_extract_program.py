"""extract_program on the shapes completions come in."""

from __future__ import annotations

import pytest

from selfregress.policy import extract_program

PROGRAM = "n = int(input())\nprint(n * 2)\n"

CASES = {
    "plain code": (PROGRAM, PROGRAM),
    "plain code, surrounding blank lines": ("\n\n" + PROGRAM + "\n\n", PROGRAM),
    "python fence": (f"```python\n{PROGRAM}```", PROGRAM),
    "py fence": (f"```py\n{PROGRAM}```\n", PROGRAM),
    "Python3 fence": (f"```Python3\n{PROGRAM}```", PROGRAM),
    "untagged fence": (f"```\n{PROGRAM}```", PROGRAM),
    "fence with prose around": (f"Here is my solution:\n\n```python\n{PROGRAM}```\n\nIt doubles n.", PROGRAM),
    "fence opened mid-line": (f"Sure! ```python\n{PROGRAM}```", PROGRAM),
    "fence closed after code": (f"```python\n{PROGRAM.rstrip()}```", PROGRAM),
    "unterminated fence (token limit)": (f"```python\n{PROGRAM}", PROGRAM),
    "first python block wins": (f"```python\n{PROGRAM}```\nor\n```python\nprint(0)\n```", PROGRAM),
    "input block skipped for the python one": (f"```text\n3\n```\n```python\n{PROGRAM}```", PROGRAM),
    "only another language": ("```bash\necho hi\n```", "echo hi\n"),
    "tilde fence": (f"~~~python\n{PROGRAM}~~~", PROGRAM),
    "longer fence keeps inner backticks": (f"````python\ns = '```'\n{PROGRAM}````", "s = '```'\n" + PROGRAM),
    "indented fence is dedented": ("1. Code:\n   ```python\n   x = 1\n   print(x)\n   ```", "x = 1\nprint(x)\n"),
    "windows line ends": (f"```python\r\n{PROGRAM.replace(chr(10), chr(13) + chr(10))}```", PROGRAM),
    "chat debris": (f"```python\n{PROGRAM}```<|im_end|>", PROGRAM),
    "chat debris in plain text": (f"{PROGRAM}<|im_end|>\n<|endoftext|>", PROGRAM),
    "llama debris": (f"{PROGRAM}</s>", PROGRAM),
    "base model runs into the next problem": (f"{PROGRAM}# Problem\nRead a string.\n# Solution\n", PROGRAM),
    "indentation inside code kept": ("```python\nfor i in range(3):\n    print(i)\n```",
                                     "for i in range(3):\n    print(i)\n"),
    "empty": ("", ""),
    "whitespace only": ("  \n\n", ""),
    "empty fence": ("```python\n```", ""),
}


@pytest.mark.parametrize("completion, expected", list(CASES.values()), ids=list(CASES))
def test_extract_program(completion, expected):
    assert extract_program(completion) == expected


def test_extracted_python_compiles():
    for name, (completion, _) in CASES.items():
        if name != "only another language":
            compile(extract_program(completion), name, "exec")
