-- Resumes the object: the operator reconciles it again, catching up on changes made while
-- it was suspended.
obj.spec.suspend = false
return obj
