package projection_test

import (
	"reflect"
	"strconv"
)

func reflectTypeOf(v any) reflect.Type { return reflect.TypeOf(v) }

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
