"""Linux kernel structures read from outside: tasks, memory maps, kernel memory, kernel events."""
