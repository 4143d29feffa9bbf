"""Writes the config reference (docs/config.md) from the code: every field's type, default, meaning
and whether it may change on resume.

  python -m experiments.config_reference --out=docs/config.md
"""

import glob
import sys

from absl import app, flags

from gatedrnn.train.fields import config_reference

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Markdown output file (stdout if unset).")
flags.DEFINE_string("configs", "configs", "Directory of the config files.")


def main(argv):
    del argv
    files = [f for f in glob.glob(f"{FLAGS.configs}/*.py") if not f.endswith(("common.py", "__init__.py"))]
    text = config_reference(files)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    app.run(main)
