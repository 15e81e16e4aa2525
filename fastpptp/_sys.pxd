# cython: language_level=3
"""The syscalls and C structs the data-plane engine uses: one nogil extern block.

Everything the I/O thread calls without the GIL is declared here (uvloop habit: the C
surface in one place).  Byte-order helpers are tiny inline functions in _gre.pyx.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t


cdef extern from * nogil:
    """
    #include <errno.h>
    #include <string.h>
    #include <unistd.h>
    #include <time.h>
    #include <pthread.h>
    #include <sys/epoll.h>
    #include <sys/eventfd.h>
    #include <sys/socket.h>
    #include <sys/uio.h>
    #include <netinet/in.h>
    #include <arpa/inet.h>
    """
    int errno
    enum:
        EAGAIN
        EWOULDBLOCK
        EINTR
        ENOPROTOOPT
        ECONNREFUSED
        EHOSTUNREACH
        ENETUNREACH
        EMSGSIZE
        ENOBUFS
        EIO

    ctypedef long ssize_t
    ssize_t read(int fd, void* buf, size_t n)
    ssize_t write(int fd, const void* buf, size_t n)
    int close(int fd)

    ctypedef int clockid_t
    struct timespec:
        long tv_sec
        long tv_nsec
    enum:
        CLOCK_MONOTONIC
    int clock_gettime(clockid_t clk, timespec* ts)

    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_mutexattr_t:
        pass
    int pthread_mutex_init(pthread_mutex_t* m, const pthread_mutexattr_t* a)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_trylock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)

    # epoll(7)
    union epoll_data_t "epoll_data":
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    enum:
        EPOLLIN
        EPOLLERR
        EPOLLHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* ev)
    int epoll_wait(int epfd, epoll_event* evs, int maxevents, int timeout)

    # eventfd(2)
    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC
    int eventfd(unsigned int initval, int flags)

    # sockets, recvmmsg/sendmmsg(2)
    ctypedef uint32_t socklen_t
    ctypedef uint32_t in_addr_t
    ctypedef uint16_t sa_family_t
    struct in_addr:
        in_addr_t s_addr
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    enum:
        AF_INET
        SOL_SOCKET
        SO_DOMAIN
        MSG_DONTWAIT
    int recvmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags, timespec* timeout)
    int sendmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    ssize_t writev(int fd, const iovec* iov, int iovcnt)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* len)
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)
    void __builtin_prefetch(const void* p)
