"""Pure logic: PHP's formats, conversions and rules as functions of their inputs. No I/O."""
