"""Builds the documentation site (docs/*.md and the API reference from the docstrings) offline.

  python -m experiments.build_docs --out=/tmp/gatedrnn_site      # then open /tmp/gatedrnn_site/index.html
"""

from absl import app, flags

from gatedrnn.lab.docs import build_site

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "/tmp/gatedrnn_site", "Directory of the built site (replaced).")


def main(argv):
    del argv
    print(f"site: {build_site(FLAGS.out)}/index.html")


if __name__ == "__main__":
    app.run(main)
