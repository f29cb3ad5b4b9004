# Put the repo root (parent of tests/) on sys.path so tests can `import utils`, `import network`, ...
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
