"""Reference implementations: plain nested loops written straight from the definitions.

Slow and obviously correct; the property tests hold the fast path against them. This
package imports nothing from the fast path (``functional``, ``lowering``, ``layers``).
"""
