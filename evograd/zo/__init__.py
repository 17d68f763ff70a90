"""Training torch modules without backpropagation: zeroth-order estimators applied in place (MeZO), forward
gradients, and low-rank population ES evaluated as one batched forward pass (EGGROLL).

The numpy estimators that any fitness function can use through ask/tell live in `evograd.optim`; this
package holds what needs torch and works on a module's parameters where they are, without a flat copy.
"""
