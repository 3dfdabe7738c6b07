"""Echo's pure logic: nothing in this package imports Ray."""
