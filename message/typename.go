package message

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseType splits a versioned type name such as "inventory.ReserveStock.v2"
// into its name ("inventory.ReserveStock") and schema version (2).
func ParseType(typeName string) (name string, version int, err error) {
	dot := strings.LastIndexByte(typeName, '.')
	if dot <= 0 || dot+2 > len(typeName) || typeName[dot+1] != 'v' {
		return "", 0, fmt.Errorf("%w: %q must end in .v<version>, like \"orders.PlaceOrder.v1\"", ErrInvalidType, typeName)
	}
	v, convErr := strconv.Atoi(typeName[dot+2:])
	if convErr != nil || v < 1 {
		return "", 0, fmt.Errorf("%w: %q has version %q, want a whole number from 1", ErrInvalidType, typeName, typeName[dot+2:])
	}
	return typeName[:dot], v, nil
}

// TypeName joins a name and a schema version: TypeName("a.B", 1) is "a.B.v1".
func TypeName(name string, version int) string {
	return name + ".v" + strconv.Itoa(version)
}
