// Package nginx decodes nginx access logs (any log_format, including
// escape=json) and error logs into typed records, one line at a time in
// bounded memory.
//
// Every record carries the file and line it came from. Lines that do not
// parse are returned as logline.Unparsed with a reason and counted in the
// scanner's Tally; nothing is dropped silently.
//
// The join key between the two logs is the connection serial number: the
// "*N" of an error line is $connection in the access log.
package nginx
