// Guest helper for the ptrace enforcement check (busybox has no tracer):
// PTRACE_ATTACH to a pid, report the result, detach. Built static by run.sh.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: ptrace_attach PID\n");
		return 2;
	}
	pid_t pid = (pid_t)atoi(argv[1]);
	if (ptrace(PTRACE_ATTACH, pid, 0, 0) != 0) {
		printf("%s\n", errno == EPERM ? "EPERM" : strerror(errno));
		return 1;
	}
	waitpid(pid, 0, 0);
	ptrace(PTRACE_DETACH, pid, 0, 0);
	printf("attached\n");
	return 0;
}
