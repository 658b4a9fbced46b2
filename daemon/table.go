package daemon

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// writeTable writes items to w as aligned columns: the header (column names
// separated by tabs), then one line per item, its cells as row returns
// them. Every listing command prints its table through it, so they all
// align alike.
func writeTable[T any](w io.Writer, header string, items []T, row func(T) []string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, header); err != nil {
		return fmt.Errorf("write the table header: %w", err)
	}
	for _, item := range items {
		if _, err := fmt.Fprintln(tw, strings.Join(row(item), "\t")); err != nil {
			return fmt.Errorf("write a table row: %w", err)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write the table: %w", err)
	}
	return nil
}
