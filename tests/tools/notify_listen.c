/*
 * notify_listen.c - the test's end of $NOTIFY_SOCKET: binds a unix datagram
 * socket at PATH and prints each datagram received, one per line (newlines in
 * a datagram become spaces), until SECONDS pass. Test code only.
 *   notify_listen PATH SECONDS
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    struct sockaddr_un sa;
    char buf[4096];
    int fd;
    time_t end;

    if (argc != 3) {
        fprintf(stderr, "usage: notify_listen PATH SECONDS\n");
        return 2;
    }
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
    unlink(argv[1]);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("notify_listen");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    end = time(NULL) + atoi(argv[2]);
    while (time(NULL) < end) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t n;
        if (poll(&p, 1, 200) <= 0) {
            continue;
        }
        n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0) {
            continue;
        }
        buf[n] = '\0';
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                buf[i] = ' ';
            }
        }
        printf("%s\n", buf);
    }
    unlink(argv[1]);
    return 0;
}
