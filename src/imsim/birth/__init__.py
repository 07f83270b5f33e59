"""The model of one birth: named cell parameters, the strategy levers on them, the Numba kernels and the two engines."""
