# Everything is in pyproject.toml; this file lets scrapyd-deploy build an egg.
from setuptools import setup

setup()
