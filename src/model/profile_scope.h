// The scopes that `bench/run --profile` sorts operators by (bench/step_profile.h):
// undo::norm, undo::rotary, undo::attention, undo::activation, undo::loss,
// undo::optimizer. An
// operator inside one counts there; a backward operator follows its forward
// operator's scope, and a custom autograd node's backward opens its own.
#pragma once
#include <ATen/record_function.h>

#define UNDO_PROFILE_SCOPE(name) RECORD_FUNCTION(name, c10::ArrayRef<const c10::IValue>{})
