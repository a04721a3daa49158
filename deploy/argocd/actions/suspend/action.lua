-- Suspends the object: while spec.suspend is true the operator makes no AWS changes for it.
obj.spec.suspend = true
return obj
