// The one translation unit with doctest's main(); every tests/**/test_*.cpp links with it.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
